"""Users, roles, scoping and the audit trail (ARCHITECTURE.md §6).

- :mod:`~anning_lib.auth.access`: who may see and do what (pure checks on an :class:`~anning_lib.auth.access.Actor`).
- :mod:`~anning_lib.auth.passwords`: argon2id password hashes and the password policy.
- :mod:`~anning_lib.auth.users`: the ``app_user`` table: add, change password, role, lock-out, log in.
- :mod:`~anning_lib.auth.audit`: the ``audit_log`` writer every module uses.
"""
