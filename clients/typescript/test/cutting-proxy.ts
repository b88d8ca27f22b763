/** A TCP proxy (node:net) to the server whose cut() drops every connection it carries; it keeps accepting. */
import { connect, createServer, type AddressInfo, type Socket } from "node:net";

export interface CuttingProxy {
  /** "host:port" of the proxy. */
  address: string;
  /** Connections accepted so far. */
  connections(): number;
  /** Reset every open connection. */
  cut(): void;
  close(): Promise<void>;
}

export async function startProxy(upstream: string): Promise<CuttingProxy> {
  const [host, port] = [upstream.slice(0, upstream.lastIndexOf(":")), Number(upstream.slice(upstream.lastIndexOf(":") + 1))];
  const open = new Set<Socket>();
  let accepted = 0;
  const server = createServer((down) => {
    accepted++;
    const up = connect(port, host);
    for (const socket of [down, up]) {
      open.add(socket);
      socket.on("close", () => open.delete(socket));
      socket.on("error", () => {});
    }
    down.pipe(up);
    up.pipe(down);
    down.on("close", () => up.destroy());
    up.on("close", () => down.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: proxyPort } = server.address() as AddressInfo;
  const cut = () => {
    for (const socket of open) socket.resetAndDestroy(); // a reset, not a graceful close
    open.clear();
  };
  return {
    address: `127.0.0.1:${proxyPort}`,
    connections: () => accepted,
    cut,
    close: () => {
      cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
