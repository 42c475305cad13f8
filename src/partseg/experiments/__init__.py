"""The paper's other experiments (experiments/, `snakemake --cores all experiments`): the method
code, metrics, pictures and report sections of each, one module per experiment; the stages in
stages/ only parse paths, load params, call these and write their outputs.
"""
