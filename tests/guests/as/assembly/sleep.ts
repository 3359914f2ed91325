// Sleeping (poll_oneoff with a clock subscription): a 50 ms sleep built on poll_oneoff, then one
// more poll_oneoff on a relative 50 ms monotonic-clock timeout whose event is inspected; each
// measured with the monotonic clock inside the guest. Prints whether at least 50 ms passed,
// and the event poll_oneoff returned.
import { poll_oneoff, println, yes } from "./wasi";

const WAIT_NS: u64 = 50_000_000;
// A 48-byte subscription, a 32-byte event and the event count.
const sub = memory.data(48, 8);
const event = memory.data(32, 8);
const nevents = memory.data(4, 4);

function poll(): u32 {
  memory.fill(sub, 0, 48);
  store<u64>(sub, 42); // userdata
  store<u8>(sub, 0, 8); // tag: clock
  store<u32>(sub, 1, 16); // clock id: monotonic
  store<u64>(sub, WAIT_NS, 24); // timeout (ns), relative
  memory.fill(event, 0xff, 32);
  return poll_oneoff(sub, event, 1, nevents);
}

let start = process.hrtime();
poll();
println("sleep >= 50ms: " + yes(process.hrtime() - start >= WAIT_NS));

start = process.hrtime();
let errno = poll();
let elapsed = process.hrtime() - start;
println("poll_oneoff: errno " + errno.toString());
println("poll_oneoff >= 50ms: " + yes(elapsed >= WAIT_NS));
println("events: " + load<u32>(nevents).toString() + " userdata: " + load<u64>(event).toString() +
  " error: " + load<u16>(event, 8).toString() + " type: " + (load<u8>(event, 10) == 0 ? "clock" : "other"));
