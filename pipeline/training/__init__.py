"""Training: the deployable module and its spec (`models`), mini-batches (`batches`), the SGD loop
(`loop`), what a run leaves behind (`checkpoint`, `report`, `resume`) and its progress bar (`progress`)."""
