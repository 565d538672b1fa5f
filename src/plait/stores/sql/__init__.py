"""The SQL layer SQLite and PostgreSQL share: named queries from the `.sql` files beside this
module, rows to and from records, and the store transactions written once as programs.

Internal: store authors use `plait.stores`.
"""
