"""The analysts' workspace over the de-identified view: read API, app catalog, reports, dashboard, export.

Everything here reads ``usage.app_daily_public`` only (cells of at least ``K_ANONYMITY`` distinct students
per day) and publishes only figures computed from published cells — see :mod:`analyst.reports`.
"""
