"""WebDataset shards: the sample format, the atomic writer, the dataset index and the streaming reader."""
