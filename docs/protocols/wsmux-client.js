// A small a3s-mux.v1 client on the standard WebSocket (browsers, Node 22+), an example of the framing in
// websocket-multiplexing.md: control messages are JSON text, binary data is a 4-byte big-endian channel id
// then the payload, text data is "<id>:<payload>". Flow control: send() waits while the channel's credit is
// used up; credit goes back to the gateway as messages are handed to onmessage.

const SUBPROTOCOL = "a3s-mux.v1";
const encoder = new TextEncoder();

class MuxChannel {
  constructor(mux, id) {
    this.mux = mux;
    this.id = id;
    this.credit = mux.window;   // payload bytes the gateway lets us send
    this.consumed = 0;          // bytes handed to onmessage, not yet granted back
    this.waiters = [];
    this.onmessage = null;      // (data: string | ArrayBuffer) => void
    this.onclose = null;        // ({code, reason} | {status, message}) => void
    this.ended = null;
  }

  async send(data) {
    while (this.credit <= 0 && !this.ended) {
      await new Promise((resolve) => this.waiters.push(resolve));
    }
    if (this.ended) throw new Error(`channel ${this.id} ended`);
    if (typeof data === "string") {
      this.credit -= encoder.encode(data).length;
      this.mux.ws.send(`${this.id}:${data}`);
    } else {
      const payload = new Uint8Array(data);
      const frame = new Uint8Array(4 + payload.length);
      new DataView(frame.buffer).setUint32(0, this.id);
      frame.set(payload, 4);
      this.credit -= payload.length;
      this.mux.ws.send(frame);
    }
  }

  close(code = 1000, reason = "") {
    if (this.ended) return;
    this.mux.control({ op: "close", ch: this.id, code, reason });
    this.end({ code, reason });
  }

  deliver(data, size) {
    if (this.onmessage) this.onmessage(data);
    this.consumed += size;
    if (this.consumed >= this.mux.window / 2) {
      this.mux.control({ op: "credit", ch: this.id, bytes: this.consumed });
      this.consumed = 0;
    }
  }

  grant(bytes) {
    this.credit += bytes;
    this.wake();
  }

  end(why) {
    this.ended = why;
    this.mux.channels.delete(this.id);
    this.wake();
    if (this.onclose) this.onclose(why);
  }

  wake() {
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}

class MuxClient {
  static connect(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, [SUBPROTOCOL]);
      ws.binaryType = "arraybuffer";
      ws.onerror = () => reject(new Error("the multiplexed connection failed"));
      ws.onmessage = (event) => {              // the first message is hello
        const hello = JSON.parse(event.data);
        resolve(new MuxClient(ws, hello));
      };
    });
  }

  constructor(ws, hello) {
    this.ws = ws;
    this.window = hello.window;
    this.maxChannels = hello.max_channels;
    this.channels = new Map();
    this.pending = new Map();                  // id -> {resolve, reject} of open()
    this.nextId = 1;
    ws.onmessage = (event) => this.dispatch(event.data);
    ws.onclose = () => {
      for (const channel of [...this.channels.values()]) channel.end({ code: 1006, reason: "connection closed" });
    };
  }

  control(message) {
    this.ws.send(JSON.stringify(message));
  }

  // kind: "websocket" (a backend WebSocket) or "http" (a GET whose response body arrives as ArrayBuffers;
  // the opened channel's status and headers are those of the response)
  open(path, { headers = {}, protocols = [], kind = "websocket" } = {}) {
    const id = this.nextId++;
    const channel = new MuxChannel(this, id);
    this.channels.set(id, channel);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: () => resolve(channel), reject });
      this.control({ op: "open", ch: id, path, headers, protocols, kind });
    });
  }

  dispatch(data) {
    if (typeof data !== "string") {
      const id = new DataView(data).getUint32(0);
      const channel = this.channels.get(id);
      if (channel) channel.deliver(data.slice(4), data.byteLength - 4);
      return;
    }
    if (data.startsWith("{")) return this.onControl(JSON.parse(data));
    const colon = data.indexOf(":");
    const channel = this.channels.get(Number(data.slice(0, colon)));
    const text = data.slice(colon + 1);
    if (channel) channel.deliver(text, encoder.encode(text).length);
  }

  onControl(message) {
    const channel = this.channels.get(message.ch);
    const pending = this.pending.get(message.ch);
    if (message.op === "opened" && pending) {
      this.pending.delete(message.ch);
      channel.status = message.status;
      channel.headers = message.headers;
      pending.resolve();
    } else if (message.op === "credit" && channel) {
      channel.grant(message.bytes);
    } else if ((message.op === "close" || message.op === "error") && channel) {
      if (pending) {
        this.pending.delete(message.ch);
        pending.reject(new Error(`channel ${message.ch}: ${message.status} ${message.message}`));
      }
      channel.end(message);
    }
  }
}

if (typeof module !== "undefined") module.exports = { MuxClient };
