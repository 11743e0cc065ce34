-- wrk script: POST one review, alternating with a small batch, as JSON.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {
  '{"text": "Setup took two minutes and it has worked flawlessly ever since."}',
  '{"texts": ["Love it, works perfectly.", "Stopped working after a week.", "Decent value for the price."]}',
}
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, "/predict", nil, bodies[(i % #bodies) + 1])
end
local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  io.write(string.format("requests %d, errors %d, p50 %.1f ms, p99 %.1f ms, %.1f req/s\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6)))
end
