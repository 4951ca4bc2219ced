"""Storage and analytics of conversations, answers and ratings (SQLModel).

Never imports Streamlit: the pages, the CLI and the tests use it alike.
"""
