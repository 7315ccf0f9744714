// A fleet of devices on the npm mqtt client (MQTT.js), as Node.js firmware or gateways use it, for
// `taihu-bench rpc --client mqttjs`. Reads one access token per line on stdin (the first line is the run id),
// connects a client per token (user name = token, clean session, no keep alive, the client id
// {run}-device-{i}), subscribes each to v1/devices/me/rpc/request/+ at QoS 1 and answers every command at once
// on v1/devices/me/rpc/response/{id} at QoS 1 with {"seq":N}, N the command's params.seq.
//
// Prints "ready N" once every device is subscribed, "commands N" (commands received so far) every second, and
// "failed <reason>" and exits 1 if a device cannot connect or subscribe. Ends its connections and exits on SIGTERM
// or when stdin closes.
//
//   node rpc_fleet.mjs <host> <port> <protocolVersion 4|5> < tokens
import mqtt from "mqtt";

const [host, port, version] = process.argv.slice(2);
// An empty line ends the list; stdin stays open after it as the fleet's lifeline.
const lines = await new Promise((resolve) => {
  const got = [];
  let buffer = "";
  const onData = (chunk) => {
    buffer += chunk;
    for (let n; (n = buffer.indexOf("\n")) >= 0;) {
      const line = buffer.slice(0, n).trim();
      buffer = buffer.slice(n + 1);
      if (line === "") {
        process.stdin.off("data", onData);
        process.stdin.on("data", () => {});
        resolve(got);
        return;
      }
      got.push(line);
    }
  };
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", onData);
});
const [runId, ...tokens] = lines;
const clients = new Array(tokens.length);
let commands = 0;

function answer(client, topic, payload) {
  const id = topic.slice("v1/devices/me/rpc/request/".length);
  if (!/^[1-9][0-9]{0,9}$/.test(id)) return;
  let seq;
  try {
    seq = JSON.parse(payload.toString()).params.seq;
  } catch {
    return;
  }
  commands++;
  client.publish("v1/devices/me/rpc/response/" + id, JSON.stringify({ seq }), { qos: 1 });
}

function connect(i) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect({
      host, port: Number(port), protocolVersion: Number(version), clientId: `${runId}-device-${i}`,
      username: tokens[i], clean: true, keepalive: 0, reconnectPeriod: 0, connectTimeout: 60_000,
    });
    clients[i] = client;
    client.on("message", (topic, payload) => answer(client, topic, payload));
    client.once("error", (e) => reject(new Error(`device ${i}: ${e.message}`)));
    client.once("connect", () => {
      client.subscribe("v1/devices/me/rpc/request/+", { qos: 1 }, (e, granted) => {
        if (e) reject(new Error(`device ${i}: ${e.message}`));
        else if (granted[0].qos >= 0x80) reject(new Error(`device ${i}: SUBACK 0x${granted[0].qos.toString(16)}`));
        else resolve();
      });
    });
  });
}

function stop(code) {
  for (const client of clients) client?.end(true);
  process.exit(code);
}

process.on("SIGTERM", () => stop(0));
process.stdin.on("end", () => stop(0));

try {
  // 64 connects in progress at once, as taihu-bench's own fleets.
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < tokens.length) await connect(next++);
  }));
} catch (e) {
  console.log("failed " + e.message);
  stop(1);
}
console.log("ready " + tokens.length);
setInterval(() => console.log("commands " + commands), 1000);
