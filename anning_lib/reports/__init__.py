"""Reports: parameterised notebooks run by papermill into HTML and PDF (:mod:`.runner`), the monthly carbon
statement's data (:mod:`.statement`), the park letterhead and PDF rendering (:mod:`.pdf`), custom reports
(:mod:`.custom`) and the monthly schedule (:mod:`.schedule`)."""
