(function () {
  "use strict";
  // Every timestamp link seeks the player on this page; without script the link itself
  // opens the video at that time (a #t= media fragment, or YouTube's &t=).
  var player = document.getElementById("player");
  function seek(t, play) {
    if (!player) return false;
    if (player.tagName === "VIDEO") {
      player.currentTime = t;
      if (play) {
        var started = player.play();
        if (started && started.catch) started.catch(function () {});
      }
    } else {
      var start = "?start=" + Math.floor(t) + "&rel=0" + (play ? "&autoplay=1" : "");
      player.src = player.getAttribute("data-embed") + start;
    }
    return true;
  }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-t]") : null;
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    var t = parseInt(link.getAttribute("data-t"), 10);
    if (seek(t, true)) {
      event.preventDefault();
      history.replaceState(null, "", "#t=" + t);
      player.scrollIntoView({ block: "nearest" });
    }
  });
  // lesson.html#t=90 opens the page with the player at 1:30
  var asked = /^#t=(\d+(?:\.\d+)?)$/.exec(location.hash);
  if (asked) seek(parseFloat(asked[1]), false);
})();
