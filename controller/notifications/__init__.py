"""Notifications: rules, email over SMTP, signed webhooks, and the delivery record."""
