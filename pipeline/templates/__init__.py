"""Config templates shipped with the package (`paretohqd init`)."""
