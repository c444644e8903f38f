-- What the application reads: one competition's table, ranked at read time.
SELECT * FROM competition_table WHERE competition_id = %(competition_id)s
