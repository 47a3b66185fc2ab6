-- snailjob.conf.lua - every setting of snailjob-lua with its default.
-- Use with `snailjob-lua -c examples/config/snailjob.conf.lua` (kept out of
-- examples/ itself, whose *.lua files are all executors). The file is a Lua chunk that
-- returns a table; SNAIL_<KEY> in the environment or in ./.env overrides any
-- key here (namespace: SNAIL_NAMESPACE). Unknown keys are an error.
return {
  server_host = "127.0.0.1",                           -- SnailJob server address
  server_port = 17888,                                 -- server gRPC port (1-65535)
  host_ip = "127.0.0.1",                               -- address the server dials back
  host_port = 17889,                                   -- this client's gRPC port (0 = any free port)
  namespace = "764d604ec6fc45f68cd92514c40e9e1a",      -- namespace id from the console
  group_name = "snail_job_demo_group",                 -- group, created in the console beforehand
  token = "SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj",       -- the group's token
  labels = "",                                         -- "k:v,k:v" or { env = "prod" }; "state":"up" is always sent
  log_level = "INFO",                                  -- DEBUG, INFO, WARN/WARNING, ERROR/CRITICAL
  log_file = "",                                       -- also append the host log here ("" = stderr only)
  executors = "",                                      -- executor files, dirs or globs: "a:b" or { "jobs/", "x.lua" }
  workers = 4,                                         -- worker threads, one Lua state each (1-1024)
  beat_interval = 10,                                  -- heartbeat seconds, fractions allowed (1 to 30)
  executor_type = 2,                                   -- type announced to the server: 1 Java, 2 Python, 3 Go
  queue_size = 65536,                                   -- tasks that may wait for a worker
  log_remote_interval = 1,                             -- seconds between task-log uploads
  log_remote_buffer_size = 50,                         -- task-log records per upload (a backlog: up to 1000)
  spool_dir = "",                                      -- journal of unacknowledged results ("" = the state dir)
  memory_limit_mb = 256,                               -- memory cap per Lua state, MiB
  lua_path = "",                                       -- package.path for executors ("" = Lua's default)
  lua_cpath = "",                                      -- package.cpath for executors ("" = Lua's default)
  rpc_timeout = 10,                                    -- seconds per call to the server
  shutdown_grace = 30,                                 -- SIGTERM: seconds running tasks get (0 = interrupt at once)
  spool_sync = "batch",                                -- journal fdatasync: batch (every 100 ms), always, never
  log_line_max = 65536,                                -- a longer task log line is cut, with a marker
  result_max = 1048576,                                -- a larger result is reported FAIL with both sizes
  log_queue_max_bytes = 67108864,                      -- task log lines waiting; full: sj.log.* waits (server down: oldest dropped)
  queue_max_bytes = 268435456,                         -- dispatches waiting, in bytes; beyond, refused
  builtins = "",                                       -- built-in executors: "http,shell,cmd,powershell" or "all"
  http_allow = "",                                     -- hosts the built-in HTTP job may reach: "*.example.com,api.x"
  lua_allow = "",                                      -- sandbox give-backs: "os.execute,io.popen,debug"
  stop_grace = 3,                                      -- s a stopped task may stay in a C call before its worker is retired
  load_timeout = 5,                                    -- s an executor file may take to load
  cleanup_budget = 1,                                  -- s for __close handlers after an interruption
  bind_host = "0.0.0.0",                               -- address the listener binds
  metrics_listen = "",                                 -- "127.0.0.1:9464": /metrics and /healthz ("" = off)
  log_format = "text",                                 -- "text" or "json" (one record per line)
}
