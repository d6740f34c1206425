"""Per-example privacy audits: did the forget set really leave the model? (`unlearn audit`, docs/audit.md)

`ulira` trains the shadow models and scores U-LiRA; `session` is the command's work (which spec, which
methods, which folder); `report` turns the result into tables, audit.json, audit.md and pictures.
"""
