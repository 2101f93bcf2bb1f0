"""Configuration: the LAVIS YAMLs of the model types and the dataset (under models/ and datasets/), and one
dataclass per config block holding each key's default and help (model_config, dataset_config, run_config).
"""
