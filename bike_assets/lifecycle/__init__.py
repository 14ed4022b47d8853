"""The model lifecycle's shared operations: audit logs, the regression window, moving the
champion. Assets, jobs, sensors and the CLI import these; asset modules never import each other.
"""
