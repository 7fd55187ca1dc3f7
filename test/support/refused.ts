import type { Recorder } from "./mocks";

/** Loads a module under fresh mocks and runs `build` with it; returns its error after checking nothing was registered. */
export async function refusedWithoutResources<M>(load: () => Promise<M>, build: (mod: M) => void): Promise<string> {
    let error: unknown;
    let recorder: Recorder | undefined;
    await jest
        .isolateModulesAsync(async () => {
            const mocks = await import("./mocks");
            recorder = await mocks.installMocks({});
            build(await load());
        })
        .catch((err: unknown) => {
            error = err;
        });
    await new Promise((r) => setTimeout(r, 50));
    expect(recorder?.resources).toEqual([]);
    return String(error);
}
