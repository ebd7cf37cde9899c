"""Reports: RESULTS.md and index.html made from finished experiment directories; nothing here loads a model.

document, html                  the results model, its Markdown rendering and its HTML page
experiment, results             what a finished experiment says about itself, read into table rows
tables, disentangle_tables      the speech tables: mean ± std over seeds, paired differences
speech, video                   the reports of the speech and the video recipes
plots, environment              figures and the environment header shared by reports and demos
"""
