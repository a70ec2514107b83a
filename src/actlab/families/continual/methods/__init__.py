"""Online adaptation methods behind one small API (`base.Method`); one file per method.

A method is built from `configs/method/<name>.yaml` with `hydra.utils.instantiate`; adding a
method is one file here plus one config there.
"""
