import { createApp } from "vue";
import App from "./App.vue";
import { reportProblem } from "./lib/problems";
import "./style.css";

const app = createApp(App);
// Never a blank page: anything a page did not catch is shown in the banner.
app.config.errorHandler = (err) => reportProblem(err);
addEventListener("unhandledrejection", (e) => reportProblem(e.reason));
app.mount("#app");
