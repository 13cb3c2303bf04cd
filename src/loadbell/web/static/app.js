// loadbell pages: small progressive enhancements. Every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // The organization / project switcher submits itself when an option is picked with the
  // mouse or a finger. Not after a key: arrow keys on a closed select change its value (and
  // fire "change") at each press, so keyboard users pick their option, then press "Go".
  for (const form of document.querySelectorAll("form[data-autosubmit]")) {
    let keyed = false;
    form.addEventListener("keydown", () => { keyed = true; });
    form.addEventListener("pointerdown", () => { keyed = false; });
    form.addEventListener("change", (event) => {
      if (event.target.name === "org") {
        const project = form.querySelector("select[name=project]");
        if (project) project.value = "";
      }
      if (!keyed) form.submit();
    });
  }

  // Confirmation before destructive actions.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const button = event.submitter;
    const message = (button && button.dataset.confirm) || form.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // Seed 003: "Set Up Slack Integration" leaves the page without saving the form.
  const setup = document.getElementById("setup-form") || document.getElementById("project-form");
  let dirty = false;
  if (setup) setup.addEventListener("input", () => { dirty = true; });
  for (const form of document.querySelectorAll("form[data-leave-warning]")) {
    form.addEventListener("submit", (event) => {
      if (dirty && !window.confirm(
        "You have unsaved changes. Setting up Slack leaves this page without saving them. Continue?"
      )) event.preventDefault();
    });
  }

  // "Add a header": a new empty row.
  for (const button of document.querySelectorAll("[data-add-row]")) {
    button.addEventListener("click", () => {
      const rows = document.getElementById(button.dataset.addRow);
      const last = rows.lastElementChild.cloneNode(true);
      const n = rows.children.length;
      for (const input of last.querySelectorAll("input")) {
        input.value = ""; input.placeholder = input.name === "header_name" ? "X-Token" : "value";
        if (input.id) input.id = input.id.replace(/\d+$/, String(n));
      }
      rows.appendChild(last);
      last.querySelector("input").focus();
    });
  }

  // Events the chosen format cannot express are greyed out, with the reason, and their
  // boxes disabled: not focusable, not sent (the page renders the same for the saved
  // format). A read-only form (a member's) stays all disabled. The template shows only
  // for the template format.
  const format = document.querySelector("select[name=format]");
  const syncFormat = () => {
    if (!format) return;
    for (const event of document.querySelectorAll(".event[data-formats]")) {
      const able = event.dataset.formats.split(" ").includes(format.value);
      event.classList.toggle("unavailable", !able);
      const why = event.querySelector(".why");
      const box = event.querySelector("input");
      if (why) why.hidden = able;
      if (box && why) {
        if (able) box.removeAttribute("aria-describedby");
        else box.setAttribute("aria-describedby", why.id);
      }
      if (box && !format.disabled) box.disabled = !able;
    }
    for (const el of document.querySelectorAll("[data-show-format]")) {
      el.hidden = !el.dataset.showFormat.split(" ").includes(format.value);
    }
  };
  if (format) { format.addEventListener("change", syncFormat); syncFormat(); }

  // Live preview: the whole form goes to the server, which renders it exactly as the
  // channel would (nothing is sent). Debounced so typing stays smooth.
  const out = document.getElementById("preview-out");
  if (setup && out && setup.dataset.preview) {
    let timer = null;
    let seq = 0;
    const refresh = async () => {
      const mine = ++seq;
      const body = new FormData(setup);
      try {
        const response = await fetch(setup.dataset.preview, { method: "POST", body, credentials: "same-origin" });
        const data = await response.json();
        if (mine !== seq) return;
        out.replaceChildren();
        if (data.ok) {
          const pre = document.createElement("pre");
          pre.className = "excerpt";
          pre.id = "preview-body";
          pre.tabIndex = 0; // a long body scrolls: keyboard users scroll it too
          pre.textContent = data.body;
          if (data.rendered) {
            // A Slack message, drawn by the server (web/slack_preview.py, escaped there);
            // its Block Kit JSON stays available under it.
            const message = document.createElement("div");
            message.className = "slack-message";
            message.id = "preview-rendered";
            message.innerHTML = data.rendered;
            const details = document.createElement("details");
            const summary = document.createElement("summary");
            summary.textContent = "Block Kit JSON";
            details.append(summary, pre);
            out.append(message, details);
          } else {
            out.appendChild(pre);
          }
        } else {
          const p = document.createElement("p");
          p.className = "field-error";
          p.textContent = data.error || "The preview failed.";
          out.appendChild(p);
        }
      } catch (err) {
        // The server-side "Preview" button still works.
      }
    };
    const later = () => { clearTimeout(timer); timer = setTimeout(refresh, 350); };
    setup.addEventListener("input", later);
    setup.addEventListener("change", later);
    // A refused form's errors are in the summary: the preview waits for a change rather
    // than repeat them.
    if (!out.dataset.wait) refresh();
  }

  // Seed 003: "Send Test Message" needs target channels; when they are all that is
  // missing, typing one enables it (the button saves the form first).
  const needsTargets = document.querySelector("button[data-needs-targets]");
  if (needsTargets) {
    const targets = document.getElementById(needsTargets.dataset.needsTargets);
    const why = document.getElementById(needsTargets.getAttribute("aria-describedby"));
    const sync = () => {
      const typed = targets && targets.value.trim() !== "";
      needsTargets.disabled = !typed;
      if (why) why.hidden = typed;
    };
    if (targets) targets.addEventListener("input", sync);
    sync();
  }

  // Copy buttons of the delivery page: each copies its block's text. They are real
  // buttons (Tab reaches them, Enter and Space press them), shown only when this runs.
  const copied = document.getElementById("copy-status");
  const copyText = async (text) => {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    // Plain http on another host than localhost: the older way, through a selection.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  };
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const block = document.getElementById(button.dataset.copy);
      if (!block) return;
      try {
        await copyText(block.textContent);
        button.textContent = "Copied";
        if (copied) copied.textContent = "Copied to the clipboard.";
      } catch (err) {
        button.textContent = "Copy failed";
        if (copied) copied.textContent = "Copying failed: select the text and copy it.";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }

  const summary = document.getElementById("error-summary");
  if (summary) summary.focus();
});
