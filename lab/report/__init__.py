"""How verdicts leave the lab: a table for people, JSON and JUnit for machines."""
