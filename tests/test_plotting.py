import plotly.graph_objects as go
import plotly.io as pio

from helpers import plotting


def test_book_renderer_bundle_has_no_plotly_js():
    plotting.use_book_renderer()
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    bundle = pio.renderers["book"].to_mimebundle(fig.to_dict())
    assert "application/vnd.plotly.v1+json" in bundle
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html
    assert "cdn" not in html.lower()
    assert len(html) < 20_000


def test_book_renderer_ids_are_deterministic():
    plotting.use_book_renderer()
    first = pio.renderers["book"].to_mimebundle(go.Figure(go.Bar(y=[1, 2])).to_dict())["text/html"]
    second = pio.renderers["book"].to_mimebundle(go.Figure(go.Bar(y=[1, 2])).to_dict())["text/html"]
    third = pio.renderers["book"].to_mimebundle(go.Figure(go.Bar(y=[1, 3])).to_dict())["text/html"]
    assert first == second
    assert first != third
