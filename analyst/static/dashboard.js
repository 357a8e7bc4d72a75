// The dashboard's presets: fill the date range and submit the form (the page itself is server-rendered).
const DAY_MS = 86400000;

function iso(date) {
  return date.toISOString().slice(0, 10);
}

function presetRange(preset, today, schoolYearStart) {
  const end = new Date(`${today}T00:00:00Z`);
  if (preset === "sytd") {
    return [schoolYearStart, today];
  }
  const days = Number(preset);
  return [iso(new Date(end.getTime() - (days - 1) * DAY_MS)), today];
}

function init() {
  const form = document.getElementById("range");
  if (!form) {
    return;
  }
  for (const button of form.querySelectorAll("button[data-preset]")) {
    button.addEventListener("click", () => {
      const [from, to] = presetRange(button.dataset.preset, form.dataset.today, form.dataset.sytd);
      form.elements.from.value = from;
      form.elements.to.value = to;
      form.requestSubmit();
    });
  }
}

init();
