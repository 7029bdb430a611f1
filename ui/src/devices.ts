// Devices page: the account's devices with who is online — refreshed as soon as the status
// stream's presence (`online_devices`) changes, and every few seconds while shown for the rest
// (names, last seen); unlink another device (two clicks).
import * as api from "./api";
import type { Device, Status } from "./api";
import { h, setMessage } from "./dom";
import type { Page } from "./shell";
import { formatWhen } from "./status";

export const DEVICES_REFRESH_MS = 5000;

export interface DevicesDeps {
  now(): number;
  /** setInterval/clearInterval, replaceable in tests. */
  every(ms: number, fn: () => void): () => void;
}

export function devicesPage(deps: DevicesDeps): Page {
  const list = h("ul", { class: "rows", "data-testid": "device-list" });
  const summary = h("p", { class: "muted", "data-testid": "device-summary" }, "Loading your devices…");
  const error = h("p", { class: "error", role: "alert", "data-testid": "devices-error" });
  setMessage(error, null);
  const element = h(
    "section",
    { class: "card", "data-testid": "devices-view" },
    h("h1", {}, "Devices"),
    summary,
    error,
    list,
  );
  /** The presence last seen in the status stream (null before the first status). */
  let presence: string | null = null;

  function row(d: Device): HTMLLIElement {
    const where = d.revoked
      ? "Unlinked"
      : d.online
        ? "Online now"
        : d.last_seen_ms > 0
          ? `Last seen ${formatWhen(d.last_seen_ms, deps.now())}`
          : "Never connected";
    const item = h(
      "li",
      { "data-testid": "device-item", "data-online": String(d.online), "data-revoked": String(d.revoked) },
      h("span", { class: `dot${d.online ? " online" : ""}`, "aria-hidden": "true" }),
      h(
        "span",
        { class: "grow" },
        h("strong", { "data-testid": "device-name" }, d.name),
        d.this_device ? h("span", { class: "badge", "data-testid": "device-this" }, "This computer") : null,
        h("br"),
        h("span", { class: "muted", "data-testid": "device-where" }, [d.platform, where].filter(Boolean).join(" · ")),
      ),
    );
    if (!d.this_device && !d.revoked) {
      const unlink = h("button", { type: "button", "data-testid": "device-revoke" }, "Unlink");
      unlink.addEventListener("click", () => {
        if (unlink.dataset.confirm !== "yes") {
          unlink.dataset.confirm = "yes";
          unlink.textContent = `Really unlink ${d.name}?`;
          unlink.classList.add("danger");
          return;
        }
        unlink.disabled = true;
        api
          .revokeDevice(d.device_id)
          .then(refresh)
          .catch((e: unknown) => {
            setMessage(error, api.errorMessage(e));
            unlink.disabled = false;
          });
      });
      item.append(unlink);
    }
    return item;
  }

  async function refresh(): Promise<void> {
    try {
      const devices = await api.listDevices();
      setMessage(error, null);
      list.replaceChildren(...devices.map(row));
      const online = devices.filter((d) => d.online).length;
      summary.textContent = `${devices.length} device${devices.length === 1 ? "" : "s"}, ${online} online.`;
    } catch (e) {
      setMessage(error, api.errorMessage(e));
      summary.textContent = "";
    }
  }

  void refresh();
  const stop = deps.every(DEVICES_REFRESH_MS, () => void refresh());
  return {
    element,
    // A device came or went (or this computer's own connection changed): look again at once.
    update(status: Status | null) {
      const now = status ? `${status.connected}|${(status.online_devices ?? []).join(",")}` : null;
      if (presence !== null && now !== null && now !== presence) void refresh();
      presence = now;
    },
    dispose: stop,
  };
}
