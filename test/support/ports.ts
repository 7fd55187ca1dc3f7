import * as net from "net";

/** `n` distinct free TCP ports on 127.0.0.1 (held open together while choosing, so they differ). */
export async function freePorts(n: number): Promise<number[]> {
    const servers = await Promise.all(
        Array.from(
            { length: n },
            () =>
                new Promise<net.Server>((res, rej) => {
                    const s = net.createServer();
                    s.once("error", rej);
                    s.listen(0, "127.0.0.1", () => res(s));
                }),
        ),
    );
    const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
    await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
    return ports;
}
