-- wrk script of tests/http/test_signin_flood.py: POST /v1/keys/verify,
-- rotating through a file of keys, as light on the client as wrk allows
-- (no Lua per response), so that the server, not wrk, sets the pace.
--
--   wrk ... -s tests/http/verify_load.lua URL -- KEYS_FILE
--
-- done() prints one line "KWLOAD {json}" with the figures; whether the
-- answers were VALID the test reads from the server's /metrics.

local requests = {}
local n, i = 0, 0

function init(args)
    for key in io.lines(args[1]) do
        if key ~= "" then
            n = n + 1
            requests[n] = wrk.format("POST", "/v1/keys/verify",
                {["Content-Type"] = "application/json"}, '{"key":"' .. key .. '"}')
        end
    end
    assert(n > 0, "no keys in " .. args[1])
    i = math.random(n)
end

function request()
    i = i % n + 1
    return requests[i]
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'KWLOAD {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
        '"err_status":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.status, e.connect, e.read, e.write, e.timeout))
end
