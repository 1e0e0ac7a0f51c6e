/**
 * The script that draws a report in the browser, from the JSON embedded in the page. It is plain
 * ES2020 in a string (the project's TypeScript has no DOM types); it builds the DOM with
 * `textContent` only, so a class or file name can never inject markup. Every chart is a Chart.js
 * chart, registered in `window.splitfitReport.charts` with how many marks its data calls for, for
 * the browser test and for anyone checking a report by hand.
 */
export const CLIENT_SCRIPT = String.raw`
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var state = { charts: [], errors: [] };
  window.splitfitReport = state;
  var BLUE = '#1f77b4', ORANGE = '#ff7f0e', GREEN = '#2ca02c', RED = '#d62728', PURPLE = '#9467bd';
  Chart.defaults.animation = false;
  Chart.defaults.font.family = 'system-ui, sans-serif';

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { if (k === 'text') e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) { if (c) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function fmt(x, d) { return x === undefined || x === null ? '—' : Number(x).toFixed(d === undefined ? 4 : d); }
  function pct(x) { return x === undefined || x === null ? '—' : (100 * x).toFixed(1) + ' %'; }
  function table(head, rows, cls) {
    return el('table', cls ? { class: cls } : {}, [
      head ? el('thead', {}, [el('tr', {}, head.map(function (h) { return el('th', { text: h }); }))]) : null,
      el('tbody', {}, rows.map(function (r) { return el('tr', {}, r.map(function (c, i) { return el(i === 0 && !head ? 'th' : 'td', { text: String(c) }); })); })),
    ]);
  }
  function chart(parent, id, title, config, expectedMarks, height) {
    var canvas = el('canvas', { id: id, role: 'img', 'aria-label': title });
    parent.appendChild(el('figure', { class: 'chart' }, [el('figcaption', { text: title }), el('div', { class: 'canvas-box', style: 'height:' + (height || 300) + 'px' }, [canvas])]));
    var c = new Chart(canvas, config);
    state.charts.push({ id: id, title: title, type: config.type, expectedMarks: expectedMarks });
    return c;
  }

  // A dashed vertical line at the best epoch (an annotation on a Chart.js chart, not a drawing of our own).
  var bestEpochLine = {
    id: 'bestEpochLine',
    afterDatasetsDraw: function (c, args, opts) {
      if (!opts || !opts.epoch) return;
      var x = c.scales.x.getPixelForValue(opts.epoch - 1), a = c.chartArea, ctx = c.ctx;
      ctx.save(); ctx.strokeStyle = '#555'; ctx.setLineDash([4, 4]); ctx.beginPath(); ctx.moveTo(x, a.top); ctx.lineTo(x, a.bottom); ctx.stroke();
      ctx.setLineDash([]); ctx.fillStyle = '#333'; ctx.font = '12px system-ui, sans-serif'; ctx.textAlign = x > (a.left + a.right) / 2 ? 'right' : 'left';
      ctx.fillText(' best epoch ' + opts.epoch + ' ', x, a.top + 12); ctx.restore();
    },
  };
  // The count in each confusion-matrix cell.
  var cellCounts = {
    id: 'cellCounts',
    afterDatasetsDraw: function (c) {
      var meta = c.getDatasetMeta(0), cells = c.data.datasets[0].data, ctx = c.ctx;
      ctx.save(); ctx.font = '13px system-ui, sans-serif'; ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
      meta.data.forEach(function (cell, i) {
        var p = cell.getCenterPoint(); ctx.fillStyle = cells[i].f > 0.55 ? '#fff' : '#111'; ctx.fillText(String(cells[i].v), p.x, p.y);
      });
      ctx.restore();
    },
  };

  function curve(parent, id, title, epochs, series, best, saved, yTitle) {
    var last = saved;
    var datasets = series.map(function (s) {
      return {
        label: s.label, data: s.data, borderColor: s.color, backgroundColor: s.color, borderDash: s.dash || [], tension: 0,
        // The best epoch is a large circle, the saved model's epoch a triangle.
        pointRadius: function (ctx) { return ctx.dataIndex === best - 1 ? 6 : ctx.dataIndex === last - 1 ? 5 : 2; },
        pointStyle: function (ctx) { return ctx.dataIndex === last - 1 ? 'triangle' : 'circle'; },
      };
    });
    var marks = series.reduce(function (n, s) { return n + s.data.length; }, 0);
    return chart(parent, id, title, {
      type: 'line',
      data: { labels: epochs, datasets: datasets },
      options: { responsive: true, maintainAspectRatio: false, interaction: { mode: 'index', intersect: false },
        scales: { x: { title: { display: true, text: 'epoch' } }, y: { title: { display: true, text: yTitle } } },
        plugins: { bestEpochLine: { epoch: best }, legend: { position: 'bottom' } } },
      plugins: [bestEpochLine],
    }, marks);
  }

  var main = document.getElementById('report');
  main.appendChild(el('h1', { text: data.title }));
  main.appendChild(el('p', { class: 'meta', text: 'written ' + data.createdAt + ' by splitfit' }));
  data.notes.forEach(function (n) { main.appendChild(el('p', { class: 'note', text: n })); });

  var top = el('section', { class: 'two' });
  top.appendChild(el('div', {}, [el('h2', { text: 'Configuration' }), table(null, data.config, 'kv')]));
  top.appendChild(el('div', {}, [el('h2', { text: 'Timings' }), table(null, data.timings, 'kv')]));
  main.appendChild(top);
  if (data.leaderboard) {
    main.appendChild(el('section', { class: 'leaderboard' }, [el('h2', { text: 'Search leaderboard' }), el('p', { class: 'note', text: data.leaderboard.note }), table(data.leaderboard.header, data.leaderboard.rows, 'leaderboard')]));
  }

  var h = data.history;
  if (h) {
    var sec = el('section', {}, [el('h2', { text: 'Training curves' })]);
    var epochs = h.loss.map(function (_, i) { return i + 1; });
    var saved = h.savedEpoch || epochs.length;
    var bestNote = 'best epoch ' + h.bestEpoch + ' (lowest ' + h.bestBy + '); the saved model has the weights of ' +
      (saved === epochs.length ? 'the last epoch, ' + saved : 'epoch ' + saved + ' (restored by early stopping)') + ' (triangle)';
    sec.appendChild(el('p', { class: 'meta', text: bestNote }));
    var grid = el('div', { class: 'two' });
    sec.appendChild(grid);
    var loss = [{ label: 'train loss', data: h.loss, color: BLUE }];
    if (h.valLoss) loss.push({ label: 'validation loss', data: h.valLoss, color: ORANGE, dash: [6, 3] });
    curve(grid, 'chart-loss', 'Loss', epochs, loss, h.bestEpoch, saved, 'cross-entropy');
    var acc = [{ label: 'train accuracy', data: h.acc, color: BLUE }];
    if (h.valAcc) acc.push({ label: 'validation accuracy', data: h.valAcc, color: ORANGE, dash: [6, 3] });
    if (h.valAuc && h.valAuc.length === epochs.length) acc.push({ label: 'validation AUC', data: h.valAuc, color: GREEN, dash: [2, 2] });
    curve(grid, 'chart-accuracy', 'Accuracy' + (h.valAuc && h.valAuc.length ? ' and AUC' : ''), epochs, acc, h.bestEpoch, saved, 'fraction');
    main.appendChild(sec);
  }

  data.evaluations.forEach(function (ev, n) {
    var sec = el('section', { class: 'evaluation', 'data-kind': ev.kind }, [el('h2', { text: ev.title }), el('p', { class: 'meta', text: ev.on })]);
    sec.appendChild(table(['samples', 'loss', 'accuracy', 'macro AUC', 'macro precision', 'macro recall', 'macro F1', 'misclassified'],
      [[ev.n, fmt(ev.loss), pct(ev.accuracy), fmt(ev.auc), fmt(ev.macro.precision), fmt(ev.macro.recall), fmt(ev.macro.f1), ev.misclassified]], 'summary'));
    var k = ev.labels.length;
    var cells = [];
    ev.confusion.forEach(function (row, a) {
      var total = row.reduce(function (s, c) { return s + c; }, 0);
      row.forEach(function (count, p) { cells.push({ x: ev.labels[p], y: ev.labels[a], v: count, f: total ? count / total : 0 }); });
    });
    var grid = el('div', { class: 'two' });
    sec.appendChild(grid);
    var side = Math.min(560, 90 + 56 * k);
    chart(grid, 'chart-confusion-' + n, 'Confusion matrix (rows: actual, columns: predicted; colour: share of the row)', {
      type: 'matrix',
      data: { datasets: [{ label: 'samples', data: cells,
        backgroundColor: function (ctx) { var c = ctx.raw; return c ? 'rgba(31,119,180,' + (0.06 + 0.94 * c.f).toFixed(3) + ')' : 'transparent'; },
        borderColor: '#fff', borderWidth: 1,
        width: function (ctx) { var a = ctx.chart.chartArea; return a ? a.width / k - 1 : 0; },
        height: function (ctx) { var a = ctx.chart.chartArea; return a ? a.height / k - 1 : 0; } }] },
      options: { responsive: true, maintainAspectRatio: false,
        scales: { x: { type: 'category', labels: ev.labels, offset: true, grid: { display: false }, title: { display: true, text: 'predicted' } },
                  y: { type: 'category', labels: ev.labels, offset: true, reverse: false, grid: { display: false }, title: { display: true, text: 'actual' } } },
        plugins: { legend: { display: false }, tooltip: { callbacks: { title: function () { return ''; },
          label: function (ctx) { var c = ctx.raw; return 'actual ' + c.y + ', predicted ' + c.x + ': ' + c.v + ' (' + (100 * c.f).toFixed(1) + ' % of ' + c.y + ')'; } } } } },
      plugins: [cellCounts],
    }, k * k, side);
    var perClass = [
      { label: 'precision', data: ev.perClass.map(function (m) { return m.precision; }), backgroundColor: BLUE },
      { label: 'recall', data: ev.perClass.map(function (m) { return m.recall; }), backgroundColor: ORANGE },
      { label: 'F1', data: ev.perClass.map(function (m) { return m.f1; }), backgroundColor: GREEN },
    ];
    if (ev.perClass.every(function (m) { return m.auc !== undefined; })) perClass.push({ label: 'AUC (one-vs-rest)', data: ev.perClass.map(function (m) { return m.auc; }), backgroundColor: PURPLE });
    chart(grid, 'chart-classes-' + n, 'Per class', {
      type: 'bar',
      data: { labels: ev.labels, datasets: perClass },
      options: { responsive: true, maintainAspectRatio: false, scales: { y: { min: 0, max: 1 } }, plugins: { legend: { position: 'bottom' } } },
    }, perClass.length * k, side);
    sec.appendChild(table(['class', 'precision', 'recall', 'F1', 'support', 'AUC'], ev.perClass.map(function (m) {
      return [m.label, fmt(m.precision), fmt(m.recall), fmt(m.f1), m.support, fmt(m.auc)];
    }), 'per-class'));
    if (ev.modes) {
      var m = ev.modes;
      sec.appendChild(el('h3', { text: 'Training vs inference mode (compare-modes)' }));
      sec.appendChild(table(['mode', 'loss', 'accuracy'], [['training', fmt(m.training.loss), pct(m.training.accuracy)], ['inference', fmt(m.inference.loss), pct(m.inference.accuracy)]], 'modes'));
      sec.appendChild(el('p', { class: 'verdict', text: 'accuracy gap ' + fmt(m.accuracyGap) + ': ' + m.verdict }));
    }
    sec.appendChild(el('h3', { text: ev.worst.length ? 'Most confidently wrong (' + ev.worst.length + ' of ' + ev.misclassified + ' misclassified)' : 'No misclassified samples' }));
    var wall = el('div', { class: 'worst' });
    ev.worst.forEach(function (s) {
      wall.appendChild(el('figure', { class: 'sample' }, [
        s.thumbnail ? el('img', { src: s.thumbnail, alt: s.file, width: '64', height: '64' }) : el('div', { class: 'missing', text: 'no image' }),
        el('figcaption', {}, [el('span', { class: 'file', text: s.file.split('/').slice(-2).join('/'), title: s.file }), el('br'),
          el('span', { text: s.actual + ' → ' + s.predicted + ' (' + pct(s.confidence) + '; ' + s.actual + ' ' + pct(s.trueProbability) + ')' })]),
      ]));
    });
    sec.appendChild(wall);
    main.appendChild(sec);
  });
  // Multilabel and regression runs: a scatter of predicted vs true per target, or a per-label table and chart.
  (data.tasks || []).forEach(function (t, n) {
    var sec = el('section', { class: 'task', 'data-task': t.task }, [el('h2', { text: t.title }), el('p', { class: 'meta', text: t.on })]);
    var m = t.metrics;
    if (t.task === 'regress') {
      sec.appendChild(table(['samples', 'MAE', 'RMSE', 'R²', 'Spearman', 'Pearson'], [[t.n, fmt(m.mae), fmt(m.rmse), fmt(m.r2), fmt(m.spearman), fmt(m.pearson)]], 'summary'));
      var grid = el('div', { class: 'two' });
      sec.appendChild(grid);
      t.points.forEach(function (p, j) {
        var all = p.actual.concat(p.predicted);
        var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
        var pts = p.actual.map(function (a, i) { return { x: a, y: p.predicted[i] }; });
        chart(grid, 'chart-scatter-' + n + '-' + j, p.name + ': predicted vs true (dashed: predicted = true)', {
          type: 'scatter',
          data: { datasets: [
            { label: 'samples', data: pts, backgroundColor: BLUE, pointRadius: 3 },
            { label: 'predicted = true', type: 'line', data: [{ x: lo, y: lo }, { x: hi, y: hi }], borderColor: '#888', borderDash: [6, 3], pointRadius: 0 },
          ] },
          options: { responsive: true, maintainAspectRatio: false, scales: { x: { type: 'linear', title: { display: true, text: 'true ' + p.name } }, y: { title: { display: true, text: 'predicted ' + p.name } } }, plugins: { legend: { position: 'bottom' } } },
        }, pts.length + 2, 360);
      });
    } else {
      sec.appendChild(table(['samples', 'macro AUC', 'micro AUC', 'macro F1', 'micro F1', 'subset accuracy', 'Hamming loss'],
        [[t.n, fmt(m.macroAuc), fmt(m.microAuc), fmt(m.macroF1), fmt(m.microF1), pct(m.subsetAccuracy), fmt(m.hammingLoss)]], 'summary'));
      var names = m.perLabel.map(function (l) { return l.label; });
      var bars = [
        { label: 'F1 at the threshold', data: m.perLabel.map(function (l) { return l.f1; }), backgroundColor: GREEN },
        { label: 'AUC', data: m.perLabel.map(function (l) { return l.auc === undefined ? null : l.auc; }), backgroundColor: PURPLE },
      ];
      chart(sec, 'chart-labels-' + n, 'Per label', {
        type: 'bar',
        data: { labels: names, datasets: bars },
        options: { responsive: true, maintainAspectRatio: false, scales: { y: { min: 0, max: 1 } }, plugins: { legend: { position: 'bottom' } } },
      }, 2 * names.length, 300);
      sec.appendChild(table(['label', 'threshold', 'precision', 'recall', 'F1', 'support', 'accuracy', 'AUC'], m.perLabel.map(function (l) {
        return [l.label, fmt(l.threshold, 3), fmt(l.precision), fmt(l.recall), fmt(l.f1), l.support, pct(l.accuracy), fmt(l.auc)];
      }), 'per-label'));
    }
    main.appendChild(sec);
  });
  state.ready = true;
})();
`;
