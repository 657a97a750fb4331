"""The layers of a stack that are not recurrent (language reference, section 10): their
records (`kinds`) and the time arithmetic of those that change time (`time`)."""
