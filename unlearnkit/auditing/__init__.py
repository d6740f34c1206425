"""Per-example privacy audits: did the forget set really leave the model? (`unlearn audit`, `unlearnkit.audit`,
docs/audit.md)

`ulira` trains the shadow models and scores U-LiRA; `epsilon` scores forget quality as the NeurIPS 2023 challenge
does; `session` is the command's work (which spec, which
methods, which folder); `report` turns the result into tables, audit.json, audit.md and pictures.
"""
