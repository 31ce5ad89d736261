"""The quality report (odm_report/report.pdf): figures gathered from the stages, plotted, laid out."""
