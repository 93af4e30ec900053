"""A1111/Forge entry point: registers the GFTI tab and its settings section. All code lives in gfti_webui."""
from modules import script_callbacks

from gfti_webui import ui

script_callbacks.on_ui_tabs(ui.on_ui_tabs)
script_callbacks.on_ui_settings(ui.on_ui_settings)
