// The GFTI tab's Start: make a task id the way the webui's own tabs do, so the webui's progress bar and
// live preview (the loss chart) follow the run through /internal/progress. The webui loads every .js here.
function gfti_submit() {
    var id = randomId();
    requestProgress(id, gradioApp().getElementById('gfti_output'), gradioApp().getElementById('gfti_chart'),
        function() {});
    var res = Array.from(arguments);
    res[0] = id;
    return res;
}
