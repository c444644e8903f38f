"""`matchstats console`: the operations web page (what Bull Board is to BullMQ)."""
