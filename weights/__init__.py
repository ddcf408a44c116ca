"""The weights shipped with aed, installed as the package ``aedcli.shipped`` (see ``aedcli.resources``)."""
