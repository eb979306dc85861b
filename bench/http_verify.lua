-- wrk script of `make bench`: verifies keys over HTTP, rotating through a
-- file of keys.
--
--   wrk ... -s bench/http_verify.lua URL -- KEYS_FILE verify|auth
--
-- verify: POST /v1/keys/verify {"key": "..."}
-- auth:   GET /v1/auth with API-Key: ...
--
-- No Lua runs per response, so that the client, which shares the CPUs with
-- the server, costs as little as wrk allows: bench/http_bench.py checks the
-- answers on the server's /metrics instead (wrk itself counts socket errors
-- and statuses of 400 and above). done() prints one line "KWBENCH {json}".

local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

local requests = {}
local n, i = 0, 0

function init(args)
    local path = args[1]
    local mode = args[2] or "verify"
    local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
    for key in f:lines() do
        if key ~= "" then
            n = n + 1
            if mode == "auth" then
                requests[n] = wrk.format("GET", "/v1/auth", {["API-Key"] = key})
            else
                requests[n] = wrk.format("POST", "/v1/keys/verify",
                    {["Content-Type"] = "application/json"}, '{"key":"' .. key .. '"}')
            end
        end
    end
    f:close()
    assert(n > 0, "no keys in " .. path)
    -- Threads start at different places of the list.
    i = (id or 0) * 7919 % n
end

function request()
    i = i % n + 1
    return requests[i]
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'KWBENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
        '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
