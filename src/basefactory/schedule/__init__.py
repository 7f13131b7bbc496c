"""The publish DAG as data (`dag.py`), one step of it run on its own (`run.py`), and the
DAG exported as the pipeline of a CI system (`export.py`): what lets another engine
schedule the factory's steps across hosts."""
