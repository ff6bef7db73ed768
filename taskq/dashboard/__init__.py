"""``taskq dashboard``: a web page for operators, with live state, task history, dead-letter
actions and alerts (``pip install 'taskq[dashboard]'``).

Modules, each with one job:

- :mod:`.settings`: where it listens, the token, history bounds, alert rules (TOML or flags);
- :mod:`.sources`: the events exchange and the periodic readings (queue depths, control plane);
- :mod:`.live`: the current picture (workers, queues, rates), pure;
- :mod:`.history`: the SQLite task history, bounded by age and count;
- :mod:`.stats`: per-task statistics per minute (counts, runtime histograms), in that file;
- :mod:`.alerts`: rules and which alerts fire, pure; :mod:`.silences`: silences and what the
  webhooks are told, pure; :mod:`.payloads`: the webhooks' JSON shapes, pure;
  :mod:`.notify`: webhooks and Prometheus; :mod:`.alerting`: all of these for one run;
- :mod:`.service`: the Dashboard that owns all of the above for one run;
- :mod:`.security`: token, Host check, CSRF; :mod:`.web` and :mod:`.api`: pages and JSON API
  (:mod:`.stats_web`: the statistics' page and API);
- :mod:`.paths`: serving under a sub-path behind a reverse proxy (``--root-path``).

The dashboard is off the workers' hot path: it consumes the events they publish (``--events``)
and asks the control plane; it never reads work queues.
"""

from ..extras import require_extra

require_extra("dashboard", "taskq dashboard")
