// The optional visitor record on Approve: name, purpose (quick picks) and "ID checked".
// Only what staff filled in is sent, so approving without it stays one click. The server
// checks it again (controller/visitor.py) and answers a clear 400 for a bad name.
"use strict";
const EntryVisitor = (() => {
  const $ = (id) => document.getElementById(id);
  const picks = () => document.querySelectorAll('input[name="visitor_purpose"]');
  function fields() {
    const out = {}, name = $("visitor-name").value.trim();
    const pick = Array.from(picks()).find((r) => r.checked);
    if (name) out.visitor_name = name;
    if (pick) out.visitor_purpose = pick.value;
    if ($("visitor-id-checked").checked) out.visitor_id_checked = "yes";
    return out;
  }
  function reset() {                 // a new ring is a new visitor
    $("visitor").open = false; $("visitor-name").value = ""; $("visitor-id-checked").checked = false;
    picks().forEach((r) => { r.checked = false; });
  }
  return { fields, reset };
})();
