"""The Streamlit front end: the pages' shared glue, the Help panel and the dashboard's views (the only Streamlit code outside pages/)."""
