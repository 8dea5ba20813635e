"""The task command line, shared by `manage.py task` and the console script `tasks-cli`.

Nothing here imports Django: `tasks-cli` runs from an environment that has only this
package (the `task-service-cli` distribution, built from cli/pyproject.toml, with PyYAML
for `-o yaml`) and talks to a server's REST API. `manage.py task` builds the same parser,
runs the same actions and prints the same output, with the local database as one more
client (tasks.client.LocalClient).

- arguments: the actions, their options, help texts, examples and the seed's aliases;
- actions: from parsed options to a client call and its rendered output;
- remote: the REST API client; output: table, json and yaml;
- config: address and token from the options, TASKS_ADDRESS / TASKS_TOKEN, or a file;
- main: the `tasks-cli` entry point;
- jsonsafe, errortext: the checks of payloads and the wording of field errors, which the
  service shares (tasks.jsonsafe, tasks.exceptions).
"""

# The version of both distributions, task-service and task-service-cli (their pyproject
# files read it from here).
__version__ = "0.1.0"
