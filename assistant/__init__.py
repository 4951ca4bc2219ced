"""Retrieval and answering over the company's documents.

``loaders`` and ``chunking`` turn files into passages, ``ingest`` keeps the
index in step with the files, ``embeddings`` and ``store`` hold the vectors,
``keyword`` the BM25 side, ``retrieval`` fuses both and decides when there is
no answer, ``evaluation`` measures it all. Never imports Streamlit.
"""
