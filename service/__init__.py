"""Ask as an identity: access, rollout, answering and storing a turn, for every channel (no Streamlit, no FastAPI)."""
