// The JavaScript hello make bench measures workerd with: the same work as
// examples/hello, a fixed text answer.
export default {
  fetch() {
    return new Response("Hello JS from workerd!", {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
};
