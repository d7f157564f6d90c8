def load_official_transformer(path): raise NotImplementedError
