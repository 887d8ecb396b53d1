"""FAISS index wrappers, exact search, id mapping and atomic persistence."""
