// examples/fetchcount in JavaScript: it fetches URLs concurrently and counts its visits in KV.
//
//   GET /?url=A&url=B   fetches A and B at once (1 to 8 URLs)
//
// It answers JSON: the visit count, the count KV held before (null on the first visit, when the
// key does not exist), how long the fetches took together, and per URL the status and body, or
// the error that rejected the fetch (a TypeError: a URL that is not valid, a host off the
// function's allow-list, a timeout). The function needs the hosts on its fetch allow-list (if it
// has one). The count is read, then written: two requests at the same moment may count one visit.
run(async (request, env) => {
  const urls = new URL(request.url).searchParams.getAll("url");
  if (urls.length === 0 || urls.length > 8) {
    return new Response("give 1 to 8 URLs: /?url=A&url=B\n", {
      status: 400,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }

  // Start everything, then wait: the KV read and the fetches run at the same time.
  const started = Date.now();
  const previous = env.KV.get("visits");
  const fetches = Promise.all(urls.map(fetchOne));

  const before = await previous;
  const visits = (before === null ? 0 : Number(before)) + 1;
  const put = env.KV.put("visits", String(visits));

  const results = await fetches;
  const elapsed_ms = Date.now() - started;
  await put;
  console.log(`fetched ${urls.length} URLs in ${elapsed_ms} ms, visit ${visits}`);
  return Response.json({ visits, previous: before, elapsed_ms, results });
});

// fetchOne fetches url and says what came back, or why nothing did.
async function fetchOne(url) {
  try {
    const res = await fetch(url);
    const body = new Uint8Array(await res.arrayBuffer());
    return { url, status: res.status, bytes: body.length, body: new TextDecoder().decode(body.subarray(0, 1024)) };
  } catch (e) {
    return { url, error: `${e.name}: ${e.message}` };
  }
}
