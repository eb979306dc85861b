-- wrk script of `make bench`: verifies keys over HTTP, rotating through a
-- file of keys, and counts the answers that are not what a valid key gets.
--
--   wrk ... -s bench/http_verify.lua URL -- KEYS_FILE verify|auth
--
-- verify: POST /v1/keys/verify {"key": "..."}; expects 200 and "VALID".
-- auth:   GET /v1/auth with API-Key: ...;      expects 204.
-- done() prints one line "KWBENCH {json}" with the figures.

local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

local requests = {}
local n, i = 0, 0
local mode = "verify"
bad_status = 0
not_valid = 0

function init(args)
    local path = args[1]
    mode = args[2] or "verify"
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

function response(status, headers, body)
    if mode == "auth" then
        if status ~= 204 then bad_status = bad_status + 1 end
    else
        if status ~= 200 then
            bad_status = bad_status + 1
        elseif not string.find(body, '"VALID"', 1, true) then
            not_valid = not_valid + 1
        end
    end
end

function done(summary, latency, requests)
    local bad, invalid = 0, 0
    for _, t in ipairs(threads) do
        bad = bad + t:get("bad_status")
        invalid = invalid + t:get("not_valid")
    end
    local e = summary.errors
    io.write(string.format(
        'KWBENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
        '"bad_status":%d,"not_valid":%d,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
        '"err_status":%d,"err_timeout":%d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        latency.max, bad, invalid, e.connect, e.read, e.write, e.status, e.timeout))
end
