"""The shipped use cases' own code: schemas, sample data generators, request-time features.

Each is declared in ``platform_assets/defs/<name>/defs.yaml``; the generic stages
read the declaration and import the modules it names.
"""
