"""Knowledge base: document ingestion, chunking, embedding, index build and the retriever."""
