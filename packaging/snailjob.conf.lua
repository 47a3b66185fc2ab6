-- /etc/snailjob-lua/snailjob.conf.lua - settings of the snailjob-lua
-- service (systemctl start snailjob-lua). A Lua chunk returning a table;
-- SNAIL_<KEY> variables (e.g. in /etc/snailjob-lua/snailjob.env) override
-- any key. `snailjob-lua -c THIS_FILE --print-config` shows every setting
-- with its value and source; `snailjob-lua -c THIS_FILE check` tests the
-- setup without registering anything. man snailjob-lua lists them all.
return {
  -- the SnailJob server, and the group this client serves
  server_host = "127.0.0.1",
  server_port = 17888,
  namespace = "764d604ec6fc45f68cd92514c40e9e1a",
  group_name = "snail_job_demo_group",
  token = "SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj",  -- the group's token: change it

  -- where the server calls this client back: an address it can reach
  host_ip = "127.0.0.1",
  host_port = 17889,
  bind_host = "0.0.0.0",

  -- the executor files: files, directories or globs
  executors = { "/etc/snailjob-lua/executors" },
  workers = 4,

  -- the journal of unsent results (the service's state directory)
  spool_dir = "/var/lib/snailjob-lua/spool",

  -- logs go to the journal; "json" gives one JSON object per line;
  -- log_file = "/var/log/snailjob-lua/snailjob.log" also writes a file,
  -- rotated by /etc/logrotate.d/snailjob-lua (SIGUSR1 reopens it)
  log_level = "INFO",
  log_format = "text",

  -- Prometheus /metrics and /healthz ("" = off)
  metrics_listen = "",
}
